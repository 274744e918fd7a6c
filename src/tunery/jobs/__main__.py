"""``python -m tunery.jobs JOB_ID``: the training child process a worker starts (see ``runner``)."""

import sys
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

from tunery.jobs.runner import main  # noqa: E402

sys.exit(main())
