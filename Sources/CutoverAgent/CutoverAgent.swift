// The companion agent: see the files of this module.
