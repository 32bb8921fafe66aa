"""cglib: CartoonGAN (Chen, Lai, Liu, CVPR 2018) step by step.

The modules, from the top of the house down; each imports only modules below it:

- the command line and what serves people: ``__main__`` (``python -m cglib``), ``bench``
  (benchmarks that print), ``report`` (a training run as one page), ``series`` (the notebook
  series run headless), ``viz`` (figures and widgets for the notebooks: nothing below the
  command line imports it);
- training: ``ablations`` (the paper's ablations as config changes, with seeds), ``train`` (the
  loop: config and presets, phases, schedule, checkpoints, resumption), ``runs`` (the run
  folder), ``distributed`` (torchrun and DDP), ``checkpoints`` (checkpoint files);
- using a generator: ``folders`` (files and folders in, cartoons out), ``video``, ``export``
  (ONNX), ``demodata`` (the offline demo set, its cartoons from a released generator);
- the paper: ``steps`` (the two training steps, line by line), ``losses``, ``vgg`` (the content
  network), ``metrics``, ``pretrained`` (the released generators, saved generators),
  ``inference`` (the authors' forward at any size, exact tiles), ``architecture`` (what the
  networks are made of), ``models`` (generator and discriminator);
- data: ``animegan`` (the public training set), ``batches`` (the keyed, resumable streams
  training draws from), ``data`` (data sets on disk: importing your files, reading them),
  ``edges`` (edge-promoting smoothing), ``download``;
- the bottom: ``images`` (image files in and out, arrays and tensors), ``files`` (atomic
  writes, one-line file errors), ``env`` (profiles, device, precision, paths, Colab).
"""

__version__ = "0.1.0"
