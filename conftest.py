# Shared fixtures live in patrol.testing (test modules cannot import each other under
# --import-mode=importlib); third-party plugin repositories can use the same line.
pytest_plugins = ["patrol.testing"]
