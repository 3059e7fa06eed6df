"""Model families. Each is built from its config's ``_target_`` with the dataset's
``in_channels``, ``num_classes`` and ``image_size``; the engine names none of them.

This package imports nothing itself: the schemas import :mod:`rcnnexp.models.choices`
(no torch) and Hydra imports a family's module by its ``_target_`` path."""
