"""com.example.vqi.ImageSource: hands every finished image in a folder to inference exactly once
per result, by path, and survives crashes without losing or double-counting an image."""

COMPONENT_NAME = "com.example.vqi.ImageSource"
