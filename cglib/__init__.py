"""cglib: CartoonGAN (Chen, Lai, Liu, CVPR 2018) step by step.

Modules, from the bottom up: ``env`` (profiles, device, paths), ``images`` (robust image
files), ``edges`` (edge-promoting smoothing), ``data`` (data sets, your own photos and film
frames, loaders), ``models`` (generator and discriminator), ``pretrained`` (the authors'
MODULE MAP PLACEHOLDER
"""

__version__ = "0.1.0"
