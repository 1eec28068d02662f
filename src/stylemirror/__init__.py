"""stylemirror: train fast neural style networks and look into a live style mirror."""

__version__ = "0.1.0"
