"""cglib: CartoonGAN (Chen, Lai, Liu, CVPR 2018) step by step.

Modules, from the bottom up: ``env`` (profiles, device, paths), ``images`` (robust image
files), ``edges`` (edge-promoting smoothing), ``data`` (data sets and loaders), ``models``
(generator and discriminator), ``pretrained`` (the authors' released generators), ``vgg`` and
``losses`` (the objective), ``metrics``, ``train`` (the two training phases), ``viz``
(notebook figures and widgets), ``bench`` and ``__main__`` (the command line).
"""

__version__ = "0.1.0"
