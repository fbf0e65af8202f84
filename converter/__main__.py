"""`python -m nrconvert`: the same CLI as the `nrconvert` script."""
from .cli import main

main()
