"""Runs AWS CLI commands in one warm Python process, for BenchmarkRunnerTransfer.

Each line of stdin is a JSON array of the arguments of one `aws` command; when
the command is done, its exit status is written as one line to file
descriptor 3. Each command runs as `aws` runs it (awscli.clidriver's main),
with one driver, and so one botocore session and its loaded models, for all
of them: an `aws` process spends a second or more starting Python and
loading botocore before it moves a byte, and building a driver per command
still cost 0.5 to 0.9 s, where a long-lived Python runner pays that once.
What is left per command is the client's creation and the transfer.
"""

import json
import os
import sys

import awscli.clidriver


def main():
    driver = awscli.clidriver.create_clidriver()
    with os.fdopen(3, "w") as done:
        for line in sys.stdin:
            rc = driver.main(json.loads(line))
            done.write(f"{rc}\n")
            done.flush()


if __name__ == "__main__":
    main()
