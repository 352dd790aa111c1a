"""Parents in control: settings the loop obeys, and the dashboard the robot serves on the home network."""
