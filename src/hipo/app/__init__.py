"""Application layer: turns a composed config into objects (builders) and runs the jobs behind the `hipo` command."""
