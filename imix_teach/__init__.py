"""imix-teach: i-Mix (Lee et al., ICLR 2021) as a small, tested library behind a course.

Modules: ``mixing`` (MixUp, CutMix, InputMix, i-Mix), ``losses`` (N-pair, SimCLR, MoCo, BYOL),
``methods`` (the methods as nn.Modules), ``models`` (encoders and heads), ``train`` (one
pretraining loop), ``evaluate`` (linear probe, kNN, least squares), ``data`` (loaders and
augmentations for images, speech and tables), ``config`` (quick mode, data root, device).
"""
__version__ = "0.1.0"
