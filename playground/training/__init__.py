"""Training: data sets, model builder, device, batched augmentation and the training loop."""
