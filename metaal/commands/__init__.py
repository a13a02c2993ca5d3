"""The subcommands of the `metaal` command (metaal/__main__.py), one module each with main(argv).
The scripts in experiments/ and benchmarks/ call the same functions."""
