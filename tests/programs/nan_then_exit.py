"""Prints a NaN metric as its very last output, unterminated, and exits 0 at once.

ftmon reads an unfinished last line only once the process has ended, so the `nan` rule fires
on a run that is already gone: a kill policy must not call it killed.
"""

import sys

sys.stdout.write("{'loss': 1.5, 'step': 1}\n{'loss': nan, 'step': 2}")
sys.stdout.flush()
