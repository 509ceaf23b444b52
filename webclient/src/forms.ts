import { FormEvent, useState } from "react";
import { describeError } from "./session";

/** A form's submit: busy while ``action`` runs, its failure shown as the
 * error. On success the form is usually gone (the action moves on), so it
 * stays busy, and a second press sends nothing twice. */
export function useSubmit(action: () => Promise<void>) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(describeError(err));
      setBusy(false);
    }
  };
  return { error, busy, submit };
}
