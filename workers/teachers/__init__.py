"""Teachers, trained once and cached with their logits; one module per job, and each name
imported from the module that defines it (this package re-exports nothing):

* :mod:`workers.teachers.models`: the architectures per recipe (LeNet-5, AlexNet, the
  ``qnn`` circuit, the notebooks' joint ensemble) and any teacher's model built from its
  name or from a reference (the user's callable, ``torchvision:NAME``, a package's kind).
* :mod:`workers.teachers.train`: the training loop (Adam on the whole class-filtered
  training split; the recipe's scored epochs and kept weights).
* :mod:`workers.teachers.checkpoint`: a training's state after each epoch, so that a
  killed training resumes.
* :mod:`workers.teachers.cache`: the cache key, the entry's folder and its files (logits,
  meta, weights), each checked when read.
* :mod:`workers.teachers.logits`: a teacher's logits from its entry, else assembled from
  its members or trained now (:func:`~workers.teachers.logits.get_teacher`, what a trial
  calls).
* :mod:`workers.teachers.task`: the sweep's phase-1 task, one teacher as its
  ``teachers.parquet`` row.
"""
