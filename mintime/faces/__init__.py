"""Face stage of the pipeline: detection, crops, embeddings and identities.

Submodules (imported explicitly; this package imports nothing heavy):

* :mod:`mintime.faces.mtcnn`: batched MTCNN (P/R/O-Net, all frames of a clip at once, no torchvision).
* :mod:`mintime.faces.crops`: the original's square 1/3-margin crop, isotropic resize and centred padding to
  224, and the BGR backbone input.
* :mod:`mintime.faces.embedder`: face embedders used to group faces into identities.
* :mod:`mintime.faces.identities`: identity clustering.
* :mod:`mintime.faces.stage`: the face stage as one typed result (detect → identities → slots → tensors).
"""

__all__: list[str] = []
