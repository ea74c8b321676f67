"""A custom voicebridge stage: redact long digit runs (card numbers, PINs) from transcripts.

Placed between the transcriber and the dialogue, it keeps payment data out of the dialogue engine,
its prompt history and the logs, which is what PCI-minded teams ask for first.
"""

from __future__ import annotations

import re
from dataclasses import replace

from pydantic import Field

from voicebridge import Stage, StageParams
from voicebridge.frames import Frame, Transcript

_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip


class RedactDigitsParams(StageParams):
    min_digits: int = Field(4, ge=1, description="runs of at least this many digits are redacted")
    mask: str = Field("*", min_length=1, max_length=1, description="replaces each digit")
    spoken: bool = Field(True, description="also catch digits said as words (one two three)")


class RedactDigits(Stage):
    type_name = "redact_digits"
    role = "processor"
    # What it needs from the stages before it and what it emits: loading a pipeline checks
    # that a transcriber comes before it (docs/custom-stages.md).
    consumes = (Transcript,)
    produces = (Transcript,)
    description = "Masks long runs of digits in transcripts before the dialogue sees them."
    Params = RedactDigitsParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        p: RedactDigitsParams = self.params
        digit = r"\d" if not p.spoken else r"(?:\d|\b(?:" + "|".join(_WORDS) + r")\b)"
        # A run: digits, optionally separated by spaces or dashes, at least min_digits long.
        self._run = re.compile(rf"{digit}(?:[\s-]*{digit}){{{p.min_digits - 1},}}", re.IGNORECASE)

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, Transcript) and frame.text:
            frame = replace(frame, text=self.redact(frame.text))
        await self.emit(frame)

    def redact(self, text: str) -> str:
        mask = self.params.mask

        def hide(match: re.Match[str]) -> str:
            count = len(re.findall(r"\d", match.group(0)))
            count += sum(1 for w in re.findall(r"[a-z]+", match.group(0).lower()) if w in _WORDS)
            return mask * count

        return self._run.sub(hide, text)
