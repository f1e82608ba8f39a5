"""Shared pieces of the neural backends (GPU deployments, operator-supplied weights).

* :mod:`~services.neural.repository`: the local model repository
  (``<model_dir>/<name>/<version>/`` with a SHA-256 manifest) and its start-up checks;
* :mod:`~services.neural.runtime`: torch device and dtype from the settings, ONNX Runtime
  sessions with the CPU, CUDA and TensorRT execution providers;
* :mod:`~services.neural.diffusion`: latents in and out of a VAE and the denoising loop
  (progress per step, cancellation between steps) the backends share;
* :mod:`~services.neural.export`: ``torch.onnx.export`` of each network and parity checks;
* :mod:`~services.neural.tensorrt`: serialized TensorRT engines built from the ONNX files;
* :mod:`~services.neural.sam`: a Segment Anything implementation that reads the official
  checkpoint keys, for garment masks;
* :mod:`~services.neural.configs`: component configs, real-size and tiny, and writers of
  random-weight model repositories (tests and benchmarks: code real, weights fake).

Nothing here downloads anything, and nothing imports gRPC.
"""
