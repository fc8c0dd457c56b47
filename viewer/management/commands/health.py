"""python manage.py health [--only database,cache,...] [--json] [--strict]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from viewer.health.services import CHECKS, FAIL, WARN, health_as_dict, health_overall, health_report


class Command(BaseCommand):
    help = ("Check the parts this deployment needs (database and migrations, cache, channel layer, "
            "jobs and workers, data folder, slide roots). Exit status 1 when a check fails "
            "(with --strict, also when one warns): use it as the container health check.")

    def add_arguments(self, parser):
        parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(CHECKS)}")
        parser.add_argument("--json", dest="as_json", action="store_true", help="print the report as JSON")
        parser.add_argument("--strict", action="store_true", help="warnings fail too")

    def handle(self, *args, only: str, as_json: bool, strict: bool, **options):
        try:
            checks = health_report([name.strip() for name in only.split(",") if name.strip()] or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(health_as_dict(checks), indent=1))
        else:
            style = {"ok": self.style.SUCCESS, "warn": self.style.WARNING, "fail": self.style.ERROR}
            for check in checks:
                self.stdout.write(f"{style[check.status](f'{check.status:<4}')}  {check.name:<11} "
                                  f"{check.detail} ({check.ms:.0f} ms)")
        overall = health_overall(checks)
        if overall == FAIL or (strict and overall == WARN):
            raise SystemExit(1)
