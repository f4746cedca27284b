"""Deterministic generator of the bundled demo data: support tickets of a made-up SaaS product.

``python -m app.demo.generate`` rewrites ``app/demo/tickets.csv`` (committed; a test checks that
it matches this generator). 12 categories; every ticket is assembled from an opener, a
category-specific core sentence with slots (features, error codes, plans, integrations...), an
optional detail and a closing, so categories share vocabulary and are not separable by one word.

Columns: ``id, text, label, split``. The pool holds 2,000 tickets, of which 3 per category carry a
label (the seed set); the dev split holds 20 labelled tickets per category.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
TICKETS_CSV = DEMO_DIR / "tickets.csv"
POOL_SIZE = 2_000
SEEDS_PER_LABEL = 3
DEV_PER_LABEL = 20
SEED = 20261128

FEATURES = ["dashboard", "reports page", "invoice view", "team settings", "project board",
            "calendar sync", "file uploads", "search", "notifications", "mobile app",
            "CSV export", "admin console", "time tracking", "comments", "audit log"]
INTEGRATIONS = ["Slack", "Salesforce", "Zapier", "Google Drive", "Jira", "HubSpot",
                "Microsoft Teams", "GitHub", "Stripe", "Okta"]
PLANS = ["Starter", "Team", "Business", "Enterprise"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "the iOS app", "the Android app"]
CODES = ["E1042", "E2210", "E3007", "E4001", "E5120", "HTTP 500", "HTTP 502", "HTTP 429",
         "ERR_TIMEOUT", "ERR_SYNC_17"]
AMOUNTS = ["$49", "$120", "$299", "$18.50", "$1,200", "$75", "$540"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
COUNTS = ["3", "12", "40", "150", "2,000", "25,000"]

OPENERS = ["Hi team,", "Hello,", "Hi there,", "Good morning,", "Hey support,", "Dear support,",
           "", "", "Quick question:", "Urgent:", "Following up on my earlier message:"]
CLOSINGS = ["Thanks!", "Thanks in advance.", "Please advise.", "Any help appreciated.",
            "Regards, {name}", "Cheers, {name}", "", "", "This is blocking our team.",
            "Let me know if you need more details."]
NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Goran", "Hiro", "Ines", "Jonas",
         "Kavya", "Luis", "Mei", "Noah", "Olu", "Priya"]
DETAILS = ["We are on the {plan} plan.", "This started after the update on {month} 3.",
           "I attached a screenshot.", "It happens in {browser}.",
           "Our workspace has {count} users.", "I tried clearing the cache already.",
           "Ticket reference {code}.", "My colleague sees the same thing.", "", "", ""]

CATEGORIES: dict[str, list[str]] = {
    "billing": [
        "I was charged {amount} twice on my card for the {plan} plan this month.",
        "Our invoice for {month} shows {amount} but we only have {count} seats.",
        "Can you send the invoice for {month} with our VAT number on it?",
        "The billing page says our payment failed but the bank shows it went through.",
        "Why did the price of the {plan} plan change on our last invoice?",
        "How do I change the credit card used for billing on our account?",
    ],
    "refund_request": [
        "We were billed {amount} after cancelling; please refund it.",
        "I upgraded to {plan} by mistake, can I get my {amount} back?",
        "Requesting a refund for the unused months of our annual {plan} subscription.",
        "The {feature} never worked for us this month, we would like a partial refund.",
        "Please reverse the {amount} charge from {month}, it was not authorised.",
    ],
    "login_issue": [
        "I cannot sign in, the login page just reloads in {browser}.",
        "Single sign-on through {integration} fails with {code} since this morning.",
        "After entering my credentials I get stuck on a blank page.",
        "Two-factor codes are rejected every time I try to log in.",
        "My account says it is locked after too many attempts, but I only tried once.",
    ],
    "password_reset": [
        "The password reset email never arrives, I checked the spam folder.",
        "The reset link says it expired even though I clicked it right away.",
        "How can I reset the password for a team member who left?",
        "I forgot my password and the reset form shows {code}.",
        "Please send me a new password reset link, the old one does not work.",
    ],
    "bug_report": [
        "The {feature} shows {code} when I open it in {browser}.",
        "Saving changes in the {feature} silently fails, the edits disappear on reload.",
        "Dates in the {feature} are shifted by one day for users in Asia.",
        "The {feature} crashes when a name contains an emoji.",
        "Sorting in the {feature} puts 10 before 9, looks like a string sort.",
        "Clicking export in the {feature} does nothing in {browser}.",
    ],
    "feature_request": [
        "It would be great if the {feature} supported dark mode.",
        "Could you add a way to bulk edit items in the {feature}?",
        "We would love an integration with {integration}.",
        "Please consider keyboard shortcuts for the {feature}.",
        "Is there a plan to support custom fields in the {feature}?",
        "Feature idea: recurring tasks that repeat every {month_short} quarter.",
    ],
    "performance": [
        "The {feature} takes over 30 seconds to load for our {count} projects.",
        "Everything is very slow today, pages time out with {code}.",
        "Search got much slower since {month}, results take ages.",
        "The {feature} freezes {browser} when we have many items open.",
        "Sync with {integration} lags by hours instead of minutes.",
    ],
    "data_export": [
        "How do I export all our data before the end of {month}?",
        "The CSV export is missing the comments column.",
        "We need a full backup of our workspace in JSON for compliance.",
        "The export of {count} records stops halfway with {code}.",
        "Can we schedule a weekly export of the {feature} to {integration}?",
    ],
    "integration_api": [
        "The API returns {code} when we create items with a webhook.",
        "Our {integration} integration stopped syncing after we rotated the token.",
        "What is the rate limit of the REST API? We hit {code} often.",
        "The webhook payload for the {feature} is missing the user id.",
        "How do we authenticate the API from a {integration} workflow?",
    ],
    "account_cancellation": [
        "Please cancel our {plan} subscription at the end of this billing period.",
        "We are moving to another tool and want to close our account.",
        "How do I delete my account and all personal data?",
        "Cancel the workspace for our team, we no longer need it after {month}.",
        "We want to downgrade from {plan} to free and then close the account.",
    ],
    "security_concern": [
        "I received a login alert from a country I have never been to.",
        "Is our data encrypted at rest? Our auditor asks for details.",
        "Someone shared a {feature} link publicly, how do we revoke it?",
        "We suspect a phishing email pretending to be from your billing team.",
        "Please send your latest SOC 2 report and pen test summary.",
        "An ex-employee may still have access through {integration}.",
    ],
    "onboarding_question": [
        "We just signed up, how do we invite our team of {count}?",
        "What is the best way to set up the {feature} for a new project?",
        "Is there a guide for importing our data from {integration}?",
        "How do roles and permissions work for new members?",
        "Can you recommend how to organise projects for a {count}-person company?",
    ],
}
LABELS = tuple(CATEGORIES)


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        feature=rng.choice(FEATURES), integration=rng.choice(INTEGRATIONS),
        plan=rng.choice(PLANS), browser=rng.choice(BROWSERS), code=rng.choice(CODES),
        amount=rng.choice(AMOUNTS), month=rng.choice(MONTHS), count=rng.choice(COUNTS),
        name=rng.choice(NAMES), month_short=rng.choice(["first", "second", "third"]),
    )


def ticket(category: str, rng: random.Random) -> str:
    parts = [
        _fill(rng.choice(OPENERS), rng),
        _fill(rng.choice(CATEGORIES[category]), rng),
        _fill(rng.choice(DETAILS), rng),
        _fill(rng.choice(CLOSINGS), rng),
    ]
    return " ".join(part for part in parts if part)


def generate(seed: int = SEED) -> list[dict[str, str]]:
    """Unique tickets: the pool (a few labelled seeds) followed by the labelled dev split."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict[str, str]] = []

    def unique_ticket(category: str) -> str:
        while True:
            text = ticket(category, rng)
            if text not in seen:
                seen.add(text)
                return text

    seeds_left = dict.fromkeys(LABELS, SEEDS_PER_LABEL)
    for n in range(POOL_SIZE):
        category = rng.choice(LABELS)
        label = ""
        if seeds_left[category]:
            seeds_left[category] -= 1
            label = category
        rows.append({"id": f"T{n + 1:05d}", "text": unique_ticket(category), "label": label,
                     "split": "pool"})
    for category in LABELS:
        for k in range(DEV_PER_LABEL):
            rows.append({"id": f"D-{category}-{k + 1:02d}", "text": unique_ticket(category),
                         "label": category, "split": "dev"})
    return rows


def write_csv(path: Path = TICKETS_CSV, seed: int = SEED) -> int:
    rows = generate(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


if __name__ == "__main__":
    print(f"wrote {write_csv()} rows to {TICKETS_CSV}")
