# Shared fixtures live in patrol.testing (test modules cannot import each other under
# --import-mode=importlib); third-party plugin repositories can use the same line.
pytest_plugins = ["patrol.testing", "patrol.testing.users"]

import os

from hypothesis import settings

# On CI the property tests replay the same examples every run (a red CI must mean a
# change broke something, not that the dice rolled differently); locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
