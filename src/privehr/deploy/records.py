"""How privehr bytes ride in a Flower ``Message`` (one constant list shared by both ends).

A request is ``query.privehr`` whose ``RecordDict`` holds one ``ConfigRecord`` under
``privehr`` with: ``payload`` (our wire bytes, opaque to Flower), ``study`` (the config hash
the site must have approved), ``config`` (which configuration entry of the study), ``stage``
(for logs only) and ``head`` (the sender's signed audit-chain head). A reply carries
``payload`` and the site's ``head``. Nothing else travels.
"""

from __future__ import annotations

MESSAGE_TYPE = "query.privehr"
QUERY_NAME = "privehr"
RECORD = "privehr"
PAYLOAD = "payload"
STUDY = "study"
CONFIG = "config"
STAGE = "stage"
HEAD = "head"
