import CutoverCore

#if canImport(Glibc)
import Glibc
#endif

// The executable only wires modules together: every command lives in its own file.
exit(CommandLineTool.run(Array(CommandLine.arguments.dropFirst())))
