"""Imported first by the fork server of `run` (a preload module): the fork server dies with the run.

The fork server is started by the standard library without a hook of ours, and it imports its
preload modules before serving; this module is the first of them. It acts only in the process that
the run started, which the run names in the environment (``lifeline.PARENT_ENV``) just before the
fork server starts; anywhere else importing it does nothing.
"""
from __future__ import annotations

import os

from .lifeline import PARENT_ENV, die_with_parent

if os.environ.get(PARENT_ENV) == str(os.getppid()):
    die_with_parent(os.getppid())
