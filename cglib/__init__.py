"""cglib: CartoonGAN (Chen, Lai, Liu, CVPR 2018) step by step. What it builds on, from the paper
and the authors' code: docs/paper.md.

The modules, from the top of the house down; each imports only modules of its own group or of
the groups below it (tests/test_layout.py checks):

- the command line and what serves people: ``__main__`` (``python -m cglib``), ``bench``
  (benchmarks that print), ``report`` (a training run as one page), ``series`` (the notebook
  series run headless), ``pages`` (its executed pages, readable offline), ``app`` (the
  upload app of notebook 07), ``viz`` (figures and widgets for the notebooks: nothing below
  the command line imports it);
- training: ``ablations`` (the paper's ablations as config changes, with seeds), ``train`` (the
  loop: the trainer, its checkpoints and resumption), ``samples`` (the held-out photos a run
  follows), ``config`` (every setting, the presets, the schedule, the phase table), ``runs``
  (the run folder), ``distributed`` (torchrun and DDP), ``checkpoints`` (checkpoint files);
- using a generator: ``folders`` (files and folders in, cartoons out), ``video``, ``temporal``
  (video without flicker: instance-norm statistics carried over time), ``flow`` (optical flow
  and the warping error), ``export`` (ONNX), ``demodata`` (the offline demo set, its cartoons
  from a released generator);
- the paper: ``steps`` (the two training steps, line by line), ``losses``, ``vgg`` (the content
  network), ``metrics``, ``pretrained`` (the released generators, saved generators),
  ``inference`` (the authors' forward at any size), ``tiling`` (its exact tiles: instance
  normalization with the whole image's statistics), ``architecture`` (what the networks are
  made of), ``models`` (generator and discriminator), ``authors`` (the authors' generator
  written a second time, importing nothing of cglib: the independent check of the models);
- data: ``animegan`` (the public training set), ``batches`` (the keyed, resumable streams
  training draws from), ``data`` (data sets on disk: importing your files, reading them),
  ``edges`` (edge-promoting smoothing), ``download``;
- the bottom: ``images`` (image files in and out, arrays and tensors), ``files`` (atomic
  writes, one-line file errors), ``env`` (profiles, device, precision, paths, Colab).
"""

__version__ = "0.1.0"
