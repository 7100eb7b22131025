"""Training: the LightningModule shared by every loss, the reference log-prob cache, callbacks."""
