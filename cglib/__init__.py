"""cglib: CartoonGAN (Chen, Lai, Liu, CVPR 2018) step by step.

Modules, from the bottom up: ``env`` (profiles, device, paths), ``images`` (robust image
files), ``edges`` (edge-promoting smoothing), ``data`` (data sets, your own photos and film
frames, loaders), ``models`` (generator and discriminator), ``pretrained`` (the authors'
released generators, cartoonizing), ``export`` (a generator as an ONNX graph), ``demodata``
(the project's own demo data set), ``vgg`` and ``losses`` (the objective), ``metrics``,
``checkpoints`` and ``train`` (the two training phases, resumable), ``ablations`` (the paper's
ablations as config changes), ``viz`` (notebook figures and widgets), ``series`` (the notebook
series run headless), ``bench`` and ``__main__`` (the command line).
"""

__version__ = "0.1.0"
