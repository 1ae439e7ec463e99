// Loopback tests of the I/O layer.
