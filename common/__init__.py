"""Shared code for the SAM3 fine-tune reproductions (Post 01, Post 02, rank series).

Modules: model (Sam3Model at three scales, module groups, checkpoints), worlds / data
(synthetic watch and open-vocab worlds in COCO format, one loader), metrics (IoU, cgF1, ...),
spectral (MP-rank, effective rank, ...), lora, losses / train / recipes / evaluate, io / report.
"""
