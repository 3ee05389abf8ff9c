"""com.example.vqi.Dashboard: the line-side screen (live results, defect images, feedback)."""

COMPONENT_NAME = "com.example.vqi.Dashboard"
