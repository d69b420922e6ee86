"""MLflow's classic tutorial with `mlflow` replaced by `modelpack` (sed s/mlflow/modelpack/),
nothing else changed: train a random forest, track the run, log the model with
modelpack.sklearn.log_model (no input example, as the tutorial does), register it and move it
to Production. Then serve it:

    modelpack serve models:/IrisClassifier/Production

Run: python examples/tutorial.py   (the store is ./modelpack-store)
"""

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

import modelpack
from modelpack import MlflowClient

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)

modelpack.set_experiment("iris-random-forest")

with modelpack.start_run() as run:
    params = {"n_estimators": 100, "max_depth": 3, "random_state": 42}
    modelpack.log_params(params)

    model = RandomForestClassifier(**params)
    model.fit(X_train, y_train)

    accuracy = accuracy_score(y_test, model.predict(X_test))
    modelpack.log_metric("accuracy", accuracy)

    modelpack.sklearn.log_model(model, "random_forest_model")

model_uri = f"runs:/{run.info.run_id}/random_forest_model"
result = modelpack.register_model(model_uri, "IrisClassifier")

client = MlflowClient()
client.transition_model_version_stage(
    name="IrisClassifier", version=result.version, stage="Production"
)
print(f"accuracy {accuracy:.3f}; IrisClassifier v{result.version} is in Production")
