"""Training quality on this machine: train at 128 px on scikit-image's photos with real VGG19
weights (../shared/vgg19), then score a photo the run never saw (../shared/images/amber.jpg).
The same as `stylemirror bench quality`; its flags pass through (e.g. --steps 300)."""

import sys

from stylemirror.cli import main

main(["bench", "quality", *sys.argv[1:]])
