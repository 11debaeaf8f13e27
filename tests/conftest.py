"""Root conftest: its folder (tests/) goes on sys.path, so test modules can import shared helpers
such as `tiny_config`."""
