"""Data sets, from the bottom up: `cache` (decoded files on disk) and `subsets` (class-balanced picks);
`imagefolder` (an image tree's rules); `memory` (data sets held as tensors) and `streamed` (file index only),
read batch by batch by `stream_io`; `kinds` chooses between the two for an image tree. Configs name the
builders as `_target_`s; nothing here imports torch until a data set is built (this file imports nothing).
"""
