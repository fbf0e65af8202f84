"""nrconvert: a folder of photos in, a production glTF asset out."""

__version__ = "0.1.0"
