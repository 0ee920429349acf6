"""AWS client creation (aiobotocore) and the one place where botocore errors become kinesio's.

Configuration follows boto3: the default credential chain, ``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, and ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_KINESIS`` /
``AWS_ENDPOINT_URL_DYNAMODB`` all work with no code change; :class:`AWSConfig` overrides them.

The parts: ``_error_map`` (AWS error codes and botocore failures to kinesio errors),
``_client`` (sessions and clients), ``_shapes`` (response dicts to kinesio models),
``_eventstream`` (SubscribeToShard without an initial-response event) and ``_kinesis``
(:class:`AioKinesis`). Everything is imported from here.
"""

from kinesio._aws._client import AWSConfig as AWSConfig
from kinesio._aws._client import create_client as create_client
from kinesio._aws._client import tuned_session as tuned_session
from kinesio._aws._error_map import error_from_code as error_from_code
from kinesio._aws._error_map import map_aws_errors as map_aws_errors
from kinesio._aws._eventstream import _INITIAL_RESPONSE as _INITIAL_RESPONSE
from kinesio._aws._eventstream import _event_message as _event_message
from kinesio._aws._eventstream import _wrap_subscribe_body as _wrap_subscribe_body
from kinesio._aws._kinesis import AioKinesis as AioKinesis
from kinesio._aws._kinesis import not_active as not_active
from kinesio._aws._kinesis import utcnow as utcnow
