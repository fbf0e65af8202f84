"""Signpost only: the add-on test fixtures live in addon_fixtures.py.

`addon_utils` is Blender's own module name (scripts/modules/addon_utils.py). A test-side module of
that name imported before bpy starts would be handed to Blender in its place and break every
add-on and extension operator, so this file refuses to import (and is then gone from sys.modules,
leaving the name to Blender).
"""
raise ImportError("import the add-on test fixtures from addon_fixtures "
                  "(`from addon_fixtures import addon, addon_import`): addon_utils is Blender's "
                  "own module name")
