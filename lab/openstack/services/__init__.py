"""The OpenStack services of the cloud lab, one module each (see base.py for what a module provides)."""
