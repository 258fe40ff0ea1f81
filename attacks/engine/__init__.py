"""advstudy's attack engine: pure PyTorch + torchvision, never imports Django.

Django code reaches it only through ``attacks/tasks.py`` and management
commands, so that the engine stays a library usable from a notebook.
"""
