// Integration tests start the built cutover binary.
