"""The paper's numbers and setup (Zhang et al. 2017) that the report sets ours beside."""

from __future__ import annotations

# Table 1 (CIFAR-10 accuracy, %): model, random crop, weight decay, random labels, train, test.
PAPER_TABLE1 = [
    ("inception", True, True, False, 100.0, 89.05), ("inception", True, False, False, 100.0, 89.31),
    ("inception", False, True, False, 100.0, 86.03), ("inception", False, False, False, 100.0, 85.75),
    ("inception", False, False, True, 100.0, 9.78),
    ("inception_nobn", False, True, False, 100.0, 83.00), ("inception_nobn", False, False, False, 100.0, 82.00),
    ("inception_nobn", False, False, True, 100.0, 10.12),
    ("alexnet", True, True, False, 99.90, 81.22), ("alexnet", True, False, False, 99.82, 79.66),
    ("alexnet", False, True, False, 100.0, 77.36), ("alexnet", False, False, False, 100.0, 76.07),
    ("alexnet", False, False, True, 99.82, 9.86),
    ("mlp_3x512", False, True, False, 100.0, 53.35), ("mlp_3x512", False, False, False, 100.0, 52.39),
    ("mlp_3x512", False, False, True, 100.0, 10.48),
    ("mlp_1x512", False, True, False, 99.80, 50.39), ("mlp_1x512", False, False, False, 100.0, 50.51),
    ("mlp_1x512", False, False, True, 99.34, 10.61),
]
# Table 4 (Appendix E): random labels with a regularizer -> paper train accuracy (None: fails to converge).
PAPER_TABLE4 = [("inception", "weight_decay", 100.0), ("alexnet", "weight_decay", None),
                ("mlp_3x512", "weight_decay", 100.0), ("mlp_1x512", "weight_decay", 99.21),
                ("inception", "random_crop", 99.93), ("inception", "augment", 99.28)]
# Figure 1c: test error at p = 0, read off the figure (approximate).
PAPER_FIG1C_P0 = {"inception": 0.14, "alexnet": 0.24, "mlp_1x512": 0.49}
FIG1_MODELS = ("inception", "alexnet", "mlp_1x512")
FIG1A_CURVES = [("labels", 0.0, "true labels"), ("labels", 1.0, "random labels"), ("shuffled_pixels", 1.0, "shuffled pixels"),
                ("random_pixels", 1.0, "random pixels"), ("gaussian", 1.0, "gaussian")]
NUM_CLASSES = 10  # CIFAR-10: chance is 10 % test accuracy, test error 0.9, loss ln 10

# The paper's setup (Appendix A and the tables), which the README's deviations set ours beside.
PAPER_TRAIN_SIZE, PAPER_TEST_SIZE = 50_000, 10_000  # CIFAR-10's full splits
PAPER_LR_DECAY = 0.95  # "a decay factor of 0.95 per training epoch"
_TRAIN_ACCS = [row[4] for row in PAPER_TABLE1]
PAPER_SETUP = {
    "data": "the original CIFAR-10",
    "budget": f"all {PAPER_TRAIN_SIZE:,} training and {PAPER_TEST_SIZE:,} test images; the epoch count is not stated",
    "stopping": f"none stated; Table 1 reports training accuracies of {min(_TRAIN_ACCS):.2f}-{max(_TRAIN_ACCS):.0f} %",
    "init": "not stated; its models are TensorFlow ones (glorot = TensorFlow's default: Glorot-uniform kernels, "
            "zero biases; torch = PyTorch's own)",
    "conv_module": "conv -> BatchNorm -> ReLU (Appendix A), without saying which of them carries the per-channel "
                   "shift; its parameter count allows one per channel",
    "batchnorm": "not stated; its code was TensorFlow, where TF-slim's batch_norm defaults are decay 0.999 "
                 "(momentum 0.001 in PyTorch's terms) and epsilon 0.001; PyTorch's are momentum 0.1 and eps 1e-05",
    "weight_decay": "the coefficient is not stated",
    "precision": "reduced precision is not mentioned",
    "lr_schedule": f"x{PAPER_LR_DECAY:g} per epoch",
}
PAPER_WD_ALEXNET = ("AlexNet with weight decay *fails to converge* on random labels (Table 4), without stating the "
                    "coefficient")

# Table 2 (Inception v3 on ImageNet, %): data augmentation (random-resized crop + flip), dropout, weight decay,
# random labels; top-1 train, top-5 train, top-1 test, top-5 test; the best top-1 / top-5 test along training
# (the paper's numbers in parentheses, "a reference for potential performance gain of early stopping"), or None.
PAPER_TABLE2 = [
    (True, True, True, False, 92.18, 99.21, 77.84, 93.92, None, None),
    (True, False, False, False, 92.33, 99.17, 72.95, 90.43, None, None),
    (False, False, True, False, 90.60, 100.0, 67.18, 86.44, 72.57, 91.31),
    (False, False, False, False, 99.53, 100.0, 59.80, 80.38, 63.16, 84.49),
    (False, True, True, True, 91.18, 97.95, 0.09, 0.49, None, None),
    (False, False, True, True, 87.81, 96.15, 0.12, 0.50, None, None),
    (False, False, False, True, 95.20, 99.14, 0.11, 0.56, None, None),
]
IMAGENET_CLASSES = 1000  # chance: 0.1 % top-1, 0.5 % top-5
IMAGENET_WD = 4e-5  # the weight decay of the Table 2 presets (the TensorFlow Inception v3 recipe's)
