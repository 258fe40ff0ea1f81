"""advstudy's attack engine: pure PyTorch + torchvision, never imports Django.

Django code runs it only in ``attacks/jobs.py`` (the worker's side of tasks) and
management commands, so that the engine stays a library usable from a notebook.
"""
