"""llm_on_eks: Airflow tasks, hooks and triggers that deploy LLMs with vLLM on Amazon EKS."""
