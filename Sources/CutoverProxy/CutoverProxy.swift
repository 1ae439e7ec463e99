// The proxy I/O layer: see the files of this module.
