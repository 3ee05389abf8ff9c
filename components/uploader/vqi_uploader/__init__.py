"""com.example.vqi.Uploader: results to Kinesis and review images to S3 through Stream Manager."""

COMPONENT_NAME = "com.example.vqi.Uploader"
