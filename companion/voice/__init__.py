"""The voice loop: listening -> hearing -> thinking -> speaking, with barge-in and echo rejection."""
