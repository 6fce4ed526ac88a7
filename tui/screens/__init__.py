"""The app's screens: main, history, relaunch form, launch picker, confirmations."""
