"""The nucleus model the product trains and ships (HoVer-Net-style U-Net, see net.py).

data.py        the hand-annotated tiles, classes, folds by slide
net.py         architecture, targets, post-processing
training.py    sampling, augmentation (incl. IHC-like recolouring), losses, loop
inference.py   weights loading, maps, instances
segmenter.py   the Segmenter the product uses
evaluation.py  F1 / AJI / Dice / PQ and tumour balanced accuracy per dataset
tumour_context.py  a tumour call from nucleus + neighbourhood, measured beside the head (not used)
"""
