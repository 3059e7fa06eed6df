"""rcnnexp's sweeper, a Hydra plugin (Hydra instantiates sweepers from this package only):
Hydra's basic sweeper that continues a sweep run again in its folder
(:mod:`rcnnexp.sweep_resume`)."""
