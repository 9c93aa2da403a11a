"""DynamoDB turns a new table's continuous backups on in the background.

AWS: UpdateContinuousBackups fails with ContinuousBackupsUnavailableException ("Backups have not
yet been enabled for this table") while continuous backups are being enabled, which is the case
for a while right after CreateTable; clients enable point-in-time recovery once it passes:
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateContinuousBackups.html
moto accepts the call at once. Here, for `WINDOW_SECONDS` after a table's creation, the call
is refused as AWS refuses it.
"""

import datetime

from moto.core.exceptions import JsonRESTError
from moto.core.utils import utcnow
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX
from moto.dynamodb.responses import DynamoHandler

WINDOW_SECONDS = 1.0


class ContinuousBackupsUnavailable(JsonRESTError):
    def __init__(self, table_name):
        super().__init__(
            ERROR_TYPE_PREFIX + "ContinuousBackupsUnavailableException",
            f"Backups are being enabled for the table: {table_name}. Please retry later",
        )


def install():
    """Patches UpdateContinuousBackups."""
    update = DynamoHandler.update_continuous_backups

    def update_continuous_backups(self):
        name = self.body.get("TableName")
        try:
            created = self.dynamodb_backend.get_table(name).created_at
        except Exception:
            created = None  # moto answers ResourceNotFoundException itself.
        if created is not None and utcnow() - created < datetime.timedelta(seconds=WINDOW_SECONDS):
            raise ContinuousBackupsUnavailable(name)
        return update(self)

    DynamoHandler.update_continuous_backups = update_continuous_backups
