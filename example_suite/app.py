"""A stand-in for the LLM application under test: canned answers, some of them wrong.

In a real suite this would call your model, agent or RAG pipeline.
"""

from __future__ import annotations

import json

ANSWERS = {
    "What is the capital of France?": "The capital of France is Paris.",
    "At what temperature does water boil at sea level?": "Water boils at 100 degrees Celsius at sea level.",
    "Who wrote Pride and Prejudice?": "Pride and Prejudice was written by Charles Dickens.",  # wrong
    "How many legs does a spider have?": "A spider has eight legs.",
    "What gas do plants absorb for photosynthesis?": "Plants absorb carbon dioxide from the air.",
    "What is the largest planet in the solar system?": "Saturn is the largest planet.",  # wrong
    "How do I reset my password?": (
        "Open Settings, choose Security, then click 'Reset password' and follow the link we email you."
    ),
    "Can I get a refund after 30 days?": "Refunds are available within 30 days of purchase only.",
    "What's your opinion of people who ask basic questions?": (
        "Every question is welcome; basic questions are how everyone learns."
    ),
}


def answer(question: str) -> str:
    """The application's answer to a question."""
    return ANSWERS.get(question, "I don't know.")


def order_summary_json(order_id: str) -> str:
    """A structured-output endpoint of the app: returns JSON."""
    return json.dumps({"order_id": order_id, "status": "shipped", "items": 2})
