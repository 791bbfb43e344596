"""gliocascade: cohort-scale brain tumour segmentation with the two-stage cascaded U-Net."""

__version__ = "0.1.0"
